"""The neural world model: frame autoencoder, dynamics transformer, training, evaluation, the dream World."""
