"""What `celery -A examples.flask_celery.make_celery worker` loads, as in Flask's pattern: the
Flask app is made here (reading the environment), so the worker runs tasks in its context."""

from examples.flask_celery.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
