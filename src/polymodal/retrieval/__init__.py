"""polymodal.retrieval"""
