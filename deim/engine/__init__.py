"""deim.engine"""
