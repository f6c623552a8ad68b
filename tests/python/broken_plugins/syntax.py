"""A syntax error."""
def execute(ctx, input)
    return {}
