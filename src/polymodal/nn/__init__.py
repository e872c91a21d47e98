"""polymodal.nn"""
