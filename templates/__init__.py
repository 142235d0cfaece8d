# Makes the templates installable as package data (backprop_explain.templates).
