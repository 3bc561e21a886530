"""deim.data: COCO-format datasets, box-aware transforms, Dense O2O and COCO evaluation.

Modules (import them directly; this package imports nothing on purpose):

``aug_schedule``  the epoch -> stage schedule (warm-up, Dense O2O, standard, no-aug)
``labels``        ``LabelMap``: contiguous labels <-> category ids <-> names (``LabelMap.coco()``)
``annotations``   reading and checking COCO JSON, errors naming the file and annotation id
``coco``          ``CocoDetection``: ``(image, target)`` samples, ``load_item`` for mosaic
``epoch``         ``SharedEpoch``: the epoch as seen by (persistent) DataLoader workers
``transforms``    the torchvision v2 ops on ``(image, target)`` and the final conversion
``mosaic``        four-image mosaic + random affine, with or without a cache
``pipeline``      ``build_train_transforms(schedule)`` / ``build_val_transforms(size)``
``collate``       ``BatchCollator``: batch MixUp and multi-scale resizing
``loaders``       seeded DataLoaders with ``set_epoch``
``evaluator``     ``CocoEvaluator``: the 12 COCO box metrics (faster-coco-eval)
``fashion``       the built-in Fashion-MNIST detection data (``fashion_splits("reduced")``)
``statistics``    ``dataset_statistics(ann_file)``

Typical training set-up::

    schedule = AugSchedule.from_epochs(epochs=24, no_aug_epochs=2, base_size=320)
    (train_imgs, train_ann), (val_imgs, val_ann) = fashion_splits("smoke").values()
    train = CocoDetection(train_imgs, train_ann, build_train_transforms(schedule, seed=0))
    loader = build_train_loader(train, BatchCollator(schedule, epoch=train.epoch_counter), batch_size=8)
    for epoch in range(24):
        loader.set_epoch(epoch)
        for images, targets in loader:   # images [B, 3, S, S] in [0, 1]; boxes cxcywh normalised
            ...
"""
