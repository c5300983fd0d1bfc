"""The one runner of experiments (issue 34 item 5): tasks here, on local processes or on dask (:mod:`.tasks`), and
arms × seeds of classifier trainings with done-markers, resume and paired summaries (:mod:`.classifier_arms`)."""
