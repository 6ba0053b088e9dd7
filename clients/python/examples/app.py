"""The app of the tutorial "API Rate Limiting & Throttling in Flask with
Flask-Limiter", whole, with its storage in a ratemesh cluster.

It differs from the tutorial in the storage (the import of ratemesh_limits
and storage_uri, marked "ratemesh"), in two lines that let a test run it
(configuration from FLASK_* variables, and the port), and in one fix: the
tutorial's get_api_key returns the function get_remote_address instead of
calling it.
"""
import os

import ratemesh_limits  # noqa: F401  ratemesh: registers ratemesh://
from flask import Flask, jsonify, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_restful import Api, Resource

app = Flask(__name__)
app.config.from_prefixed_env()  # FLASK_RATELIMIT_STRATEGY=moving-window, etc.
api = Api(app)


# Part 7: per user, by API key, else by IP address.
def get_api_key():
    return request.headers.get("X-API-KEY") or get_remote_address()


limiter = Limiter(
    key_func=get_api_key,
    app=app,
    default_limits=["50 per hour"],
    storage_uri=os.environ.get("STORAGE_URI", "memory://"),  # ratemesh: "ratemesh://host:port,..."
)

# Part 4: the products API.
products = [
    {"id": 1, "name": "Amul Butter", "price": 50},
    {"id": 2, "name": "Tata Tea", "price": 200},
    {"id": 3, "name": "Parle-G Biscuits", "price": 10},
]


class ProductList(Resource):
    decorators = [limiter.limit("5 per minute")]  # Limit: 5 req/min per IP

    def get(self):
        return jsonify(products)


class ProductDetail(Resource):
    decorators = [limiter.limit("10 per minute")]

    def get(self, product_id):
        product = next((p for p in products if p["id"] == product_id), None)
        if product:
            return jsonify(product)
        return {"error": "Product not found"}, 404


# Part 5.
api.add_resource(ProductList, "/products")
api.add_resource(ProductDetail, "/products/<int:product_id>")

# Part 8: role-based limits.
USER_LIMITS = "10 per minute"
ADMIN_LIMITS = "100 per minute"


def role_based_limit():
    api_key = request.headers.get("X-API-KEY")
    if api_key == "admin123":
        return ADMIN_LIMITS
    return USER_LIMITS


class RoleBasedProducts(Resource):
    decorators = [limiter.limit(role_based_limit)]

    def get(self):
        return jsonify(products)


api.add_resource(RoleBasedProducts, "/rb-products")


# Part 9: the custom 429.
@app.errorhandler(429)
def ratelimit_handler(e):
    return jsonify(error="Too many requests. Please try again later.", limit=str(e.description)), 429


# Part 10: burst + sustained, exempt, shared.
@app.route("/flash-sale")
@limiter.limit("10 per minute; 200 per day")
def flash_sale():
    return jsonify(products)


@app.route("/health")
@limiter.exempt
def health_check():
    return {"status": "ok"}


shared_limit = limiter.shared_limit("20 per minute", scope="products")


@app.route("/popular")
@shared_limit
def popular():
    return {"popular": ["Amul Butter", "Tata Tea"]}


@app.route("/deals")
@shared_limit
def deals():
    return {"deals": ["Parle-G Biscuits"]}


# The global default (50 per hour) on a route without limits of its own.
@app.route("/about")
def about():
    return {"shop": "products"}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "5000")), threaded=True)
