"""The released 4M tokenizers (apple/ml-4m, ``EPFL-VILAB/4M_tokenizers_*``), loaded from their own folders.

Modules: `vit` (the ViT encoder / decoder), `quantizers` (lucid VQ, Memcodes), `mlp` (the Bottleneck MLP),
`vqvae` (the VQ-VAE tokenizer: ViT or MLP, lucid or Memcodes), `divae` (the diffusion decoder family) and
`folder` (`load_official_tokenizer`: reads a released folder and picks the family).
"""
