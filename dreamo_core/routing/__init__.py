"""Attention routing: the training losses (flow matching, L_route, L_holder) and response maps for display."""
