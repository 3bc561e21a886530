"""deim.data"""
