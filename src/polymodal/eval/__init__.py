"""polymodal.eval"""
