def run(ctx, input):
    return {}
