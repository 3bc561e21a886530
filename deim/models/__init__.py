"""deim.models"""
