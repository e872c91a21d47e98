"""polymodal.train"""
