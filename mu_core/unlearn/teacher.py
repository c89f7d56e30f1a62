"""Approximate unlearning by teachers, importance and curvature: SCRUB, Bad Teacher, SSD, Fisher forgetting, influence (WoodFisher) and UNSIR."""

from __future__ import annotations
