"""Pure maths, no state: array in, array out (numpy or torch)."""
