"""VITRON without ROS: config, models, parser, specialists, pipeline. Importing this package loads no ROS module
and no heavy library; torch and transformers are imported where they are used."""
