"""polymodal.interop"""
