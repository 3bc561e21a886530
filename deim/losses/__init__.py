"""deim.losses"""
