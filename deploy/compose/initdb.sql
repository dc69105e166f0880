-- MLflow's backend store beside the Dagster instance's database (POSTGRES_DB), as in the cluster profile.
CREATE DATABASE mlflow;
