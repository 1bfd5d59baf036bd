"""One module per fault family; each registers its fault classes with `@register`."""
