"""Models-from-code entry point that MLflow executes when it loads a samsar pyfunc model.

Logging the model as code (this file) instead of a cloudpickle keeps code out of pickles.
"""

import mlflow

from samsar.tracking.pyfunc import AdapterModel

mlflow.models.set_model(AdapterModel())
