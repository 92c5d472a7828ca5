"""The latent spaces: sampling, the Gaussianized-W prior (estimator, file format, cache), diagnostics,
log-compression and truncation, interpolation, and latent guidance for conditional generators."""
