"""polymodal.tokenizers"""
