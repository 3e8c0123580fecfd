"""The PostgreSQL implementation of the agent store (psycopg 3, psycopg_pool); imported only for a postgresql:// location."""
