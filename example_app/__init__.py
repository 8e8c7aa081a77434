"""Example Flask app for flask-trigger-outputs."""
