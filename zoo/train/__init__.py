"""Training and fine-tuning: the papers' recipes, a torchrun/DDP engine, resumable checkpoints."""
from .recipes import Recipe, describe_recipe, recipe_for, recipes

__all__ = ["Recipe", "recipe_for", "recipes", "describe_recipe"]
