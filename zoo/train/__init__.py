"""Training and fine-tuning: the papers' recipes, a torchrun/DDP engine, resumable checkpoints."""
from .recipes import Recipe, all_recipes, describe_recipe, recipe_for

__all__ = ["Recipe", "recipe_for", "all_recipes", "describe_recipe"]
