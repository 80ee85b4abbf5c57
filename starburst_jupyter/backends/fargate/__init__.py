"""What the Fargate backend needs from AWS, through boto3's standard configuration only
(credential chain, profiles, region, AWS_ENDPOINT_URL[_<SERVICE>]), so the same code reaches AWS,
moto or LocalStack. Faces never import this package; the core reaches it through the backend."""
