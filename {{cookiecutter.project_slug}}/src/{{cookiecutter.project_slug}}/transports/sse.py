"""Placeholder: the sse transport is being built."""

from fastapi import APIRouter

NAME = "sse"
router = APIRouter()
