// An access token with Spring Security's OAuth 2.0 client, without Spring
// Boot: the registration that application.yaml describes, built in code. The
// credentials come from the OAuthClient's Secret: CLIENT_ID, CLIENT_SECRET and
// TOKEN_URL in the environment; the argument is the client authentication
// method (default client_secret_post, the Secret's token_endpoint_auth_method).
package example;

import org.springframework.security.oauth2.client.AuthorizedClientServiceOAuth2AuthorizedClientManager;
import org.springframework.security.oauth2.client.InMemoryOAuth2AuthorizedClientService;
import org.springframework.security.oauth2.client.OAuth2AuthorizeRequest;
import org.springframework.security.oauth2.client.OAuth2AuthorizedClient;
import org.springframework.security.oauth2.client.OAuth2AuthorizedClientProviderBuilder;
import org.springframework.security.oauth2.client.registration.ClientRegistration;
import org.springframework.security.oauth2.client.registration.InMemoryClientRegistrationRepository;
import org.springframework.security.oauth2.core.AuthorizationGrantType;
import org.springframework.security.oauth2.core.ClientAuthenticationMethod;
import org.springframework.security.oauth2.core.OAuth2AccessToken;

public final class TokenExample {
    public static void main(String[] args) {
        String method = args.length > 0 ? args[0] : "client_secret_post";
        ClientRegistration collibra = ClientRegistration.withRegistrationId("collibra")
                .clientId(System.getenv("CLIENT_ID"))
                .clientSecret(System.getenv("CLIENT_SECRET"))
                .authorizationGrantType(AuthorizationGrantType.CLIENT_CREDENTIALS)
                // client_secret_post puts id and secret in the form body;
                // client_secret_basic form-encodes them before HTTP Basic
                // (Spring Security 7.1 does by default), so both work with the
                // ':' in Collibra's client ids.
                .clientAuthenticationMethod(new ClientAuthenticationMethod(method))
                .tokenUri(System.getenv("TOKEN_URL"))
                .build();

        // What Spring Boot builds from application.yaml: the manager asks the
        // token endpoint (RestClientClientCredentialsTokenResponseClient) and
        // keeps the token until it is about to expire.
        var registrations = new InMemoryClientRegistrationRepository(collibra);
        var manager = new AuthorizedClientServiceOAuth2AuthorizedClientManager(
                registrations, new InMemoryOAuth2AuthorizedClientService(registrations));
        manager.setAuthorizedClientProvider(
                OAuth2AuthorizedClientProviderBuilder.builder().clientCredentials().build());

        OAuth2AuthorizeRequest request = OAuth2AuthorizeRequest.withClientRegistrationId("collibra")
                .principal("billing-etl")
                .build();
        OAuth2AuthorizedClient client = manager.authorize(request);
        OAuth2AccessToken token = client.getAccessToken();
        System.out.printf("got a %s token valid until %s (%s)%n",
                token.getTokenType().getValue(), token.getExpiresAt(), method);
        // A second authorize() returns the cached token without a request.
        if (manager.authorize(request).getAccessToken() != token) {
            throw new IllegalStateException("the token was not cached");
        }
    }
}
