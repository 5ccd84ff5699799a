"""How the nightly run is scheduled: cron, systemd and an Airflow DAG (airflow_dag.py imports Airflow)."""
