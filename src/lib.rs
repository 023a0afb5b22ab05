//! collibra-oauth-operator: registers OAuth clients in Collibra for
//! `OAuthClient` resources and keeps their credentials in Secrets.
