"""The VITRON lab: ShapesWorld (a synthetic world with exact answers), the trainers that teach the tiny models on
it, the evaluation suites that score any profile on held-out scenes, and the builders of the tiny test profile.

Robots install the runtime (vitron_ros) only; the runtime never imports this package.
"""
