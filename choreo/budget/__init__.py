"""Budget arithmetic, in one place: the keeper's per-step reservations, a step's allowance
enforced at the model call, what a step sees as ``BudgetLeft``, and token estimates.
"""
