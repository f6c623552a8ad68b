"""Fine."""
def execute(ctx, input):
    return {"fine": True}
