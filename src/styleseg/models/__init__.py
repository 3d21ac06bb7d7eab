"""Networks: equalized-learning-rate layers, the style-based generator, the discriminator, growth."""
