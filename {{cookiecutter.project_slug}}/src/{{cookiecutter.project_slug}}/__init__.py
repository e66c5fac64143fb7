"""A FastAPI real-time service (SSE/WebSocket fan-out with JWT auth); see README.md."""

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
DESCRIPTION = {{ cookiecutter.description | tojson }}
