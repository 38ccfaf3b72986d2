"""Client for food-api. FoodClient (blocking) and AsyncFoodClient (asyncio) for predictions,
AdminClient for the management routes; every failure a FoodAPIError of a kind below."""
from ._policy import Prediction
from .aio import AsyncFoodClient
from .client import AdminClient, FoodClient
from .errors import (BadInput, Conflict, DeadlineExceeded, FoodAPIError, NotFound, Overloaded, ServerError,
                     Unauthorized, UnexpectedResponse, Unreachable)

__version__ = "0.2.0"
__all__ = ["AdminClient", "AsyncFoodClient", "BadInput", "Conflict", "DeadlineExceeded", "FoodAPIError", "FoodClient",
           "NotFound", "Overloaded", "Prediction", "ServerError", "Unauthorized", "UnexpectedResponse", "Unreachable"]
