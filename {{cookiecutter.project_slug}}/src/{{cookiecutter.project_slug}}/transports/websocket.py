"""Placeholder: the websocket transport is being built."""

from fastapi import APIRouter

NAME = "websocket"
router = APIRouter()
