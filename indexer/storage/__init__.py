"""All SQL lives in this package; nothing else imports a sqlite binding."""
