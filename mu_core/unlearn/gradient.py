"""Approximate unlearning by gradient steps: NegGrad+, random labels, SalUn, l1-sparse, boundary shrink and expand."""

from __future__ import annotations
