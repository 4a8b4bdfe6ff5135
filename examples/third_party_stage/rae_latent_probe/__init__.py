"""rae-latent-probe: a template third-party stage for rae-framework (a linear probe of the RAE's latents)."""
