"""polymodal.generation"""
