"""The named presets of the paper's zoo: one typed entry per model, looked up in one place.

* :mod:`deim.presets.catalog`: :class:`~deim.presets.catalog.Preset` (model + paper schedule +
  optimiser groups), :func:`~deim.presets.catalog.get_preset`, :func:`~deim.presets.catalog.list_presets`;
* :mod:`deim.presets.resolve`: the one override grammar (``decoder.num_layers=2``,
  ``num_queries=40``) and :func:`~deim.presets.resolve.resolve_preset` /
  :func:`~deim.presets.resolve.resolve_model`;
* :mod:`deim.presets.sections` / :mod:`deim.presets.training`: the typed halves of an entry;
* :mod:`deim.presets.models` / :mod:`deim.presets.schedules`: the official values.

Everything here is plain data (no torch): the builders (:mod:`deim.models.build`,
:mod:`deim.losses.build`) and the engine read it; it imports only :mod:`deim.data.aug_schedule`
and the leaf helpers.
"""
