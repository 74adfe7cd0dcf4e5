"""tierwise: customer classification and prioritisation (客户分类与优先排序)."""

__version__ = "0.1.0"
