"""polymodal.viz"""
