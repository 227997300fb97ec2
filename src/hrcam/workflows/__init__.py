"""Multi-step workflows built on the library: localization evaluation and the built-in demo."""
