"""What only the 2-D circle study has (the paper's toy model); its config ships beside it."""

from pathlib import Path

CIRCLE_CONFIG = Path(__file__).with_name("circle.yaml")
