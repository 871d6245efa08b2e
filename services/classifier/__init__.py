"""The classifier: re-classifies a customer on every purchase event and as time passes."""
