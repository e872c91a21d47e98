"""polymodal.model"""
