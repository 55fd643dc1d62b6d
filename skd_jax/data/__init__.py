"""Tasks, prompt templates and data pipelines (tfds array_record + grain)."""
from skd_jax.data.pipeline import Batch, batch_dataset, encode_split, make_dataset
from skd_jax.data.tasks import Task, get_task, list_tasks, register_task
from skd_jax.data.templates import render_prompt, truncate_at_stop_strings
