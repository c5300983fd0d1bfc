"""``cellsynth study``: does synthetic data help on my data?

One fixed split, the same real test cells for every arm, arms × seeds paired by seed, and a report that compares
every generated arm with the cheap alternatives (class-balanced sampling, copies of the real rare cells, mixup).

- :mod:`.settings`: what a study is (typed; stored as ``settings.json`` and checked when a run resumes);
- :mod:`.arms`: which arms a study runs and what each changes in the classifier's training;
- :mod:`.plan`: the data, the split, the thinned rare classes and the per-seed synthetic sets;
- :mod:`.realism_filters`: which generated cells a filter keeps (UMAP–GMM, classifier confidence, k-NN realism);
- :mod:`.runner`: arms × seeds, resumable, in this process, on local processes or on a dask cluster;
- :mod:`.comparisons`: paired differences (Wilcoxon, bootstrap CIs) and the verdict;
- :mod:`.report`: ``summary.json`` and ``report.html``;
- :mod:`.command`: the command line.
"""
