"""{{ cookiecutter.description }}"""

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}
